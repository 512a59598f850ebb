"""Differential tests: the same scripted packet exchange against gearmand and gearshift."""
