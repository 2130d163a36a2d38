"""Modbus TCP / RTU / RTU-over-TCP connector (read-only)."""
