"""Page layout for engines that read text lines: reading order, tables as cells, script consistency."""
