"""One router per resource; each endpoint calls exactly one service function."""
