"""Migration 0005: ports made before security groups existed get their project's default group."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import text

from atoll.store.db import alembic_config, create_db_engine, open_database


def test_existing_ports_join_a_new_default_group(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'atoll.db'}"
    engine = create_db_engine(url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003_networks")
        now = "2024-01-01T00:00:00Z"
        conn.execute(text("INSERT INTO projects (name, created_at) VALUES ('default', :now)"), {"now": now})
        conn.execute(
            text(
                "INSERT INTO networks (id, project, name, type, mtu, labels, created_at) "
                "VALUES ('n1', 'default', 'net', 'bridge', 1500, '{}', :now)"
            ),
            {"now": now},
        )
        for port in ("p1", "p2"):
            conn.execute(
                text(
                    "INSERT INTO ports (id, project, network_id, instance_id, device, mac, aliases, "
                    "created_at) VALUES (:id, 'default', 'n1', NULL, 'eth0', :mac, '[]', :now)"
                ),
                {"id": port, "mac": f"02:a7:00:00:00:0{port[1]}", "now": now},
            )
    engine.dispose()
    sessions = open_database(url)  # upgrades to head
    with sessions() as s:
        groups = s.execute(text("SELECT id, name FROM security_groups")).all()
        assert [name for _, name in groups] == ["default"]
        group_id = groups[0][0]
        bound = s.execute(text("SELECT port_id, group_id FROM port_security_groups ORDER BY port_id")).all()
        assert bound == [("p1", group_id), ("p2", group_id)]
        rules = s.execute(
            text(
                "SELECT direction, remote_cidr, remote_group_id FROM security_group_rules ORDER BY direction"
            )
        ).all()
        assert rules == [("egress", "0.0.0.0/0", None), ("ingress", "", group_id)]
