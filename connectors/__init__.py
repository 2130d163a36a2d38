"""Protocol connectors: one folder per protocol. Connectors emit sample chunks into the core;
they import neither ``dataset_builder`` nor ``models`` and write no files."""
