"""Domain logic of the controller. No HTTP and no kernel: services take a ``Controller``, use short DB
sessions, call host agents outside any transaction, and raise ``atoll.model.errors``."""
