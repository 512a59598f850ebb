"""End-to-end durability tests: real ``gearshift serve --store ...`` processes, killed and
restarted, checked over raw sockets (issue 4, server side)."""
