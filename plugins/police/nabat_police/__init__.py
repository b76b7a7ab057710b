"""Nabat connector for police systems (ГИБДД/МВД 02 dispatch)."""
