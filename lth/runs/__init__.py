"""Run directories: layout, atomic writes, checksums and the lock (store); what produced a run
(provenance); the list of runs under a root (index, `lth runs list`)."""
