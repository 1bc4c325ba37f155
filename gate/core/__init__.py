"""The kernel every role shares: typed events, errors, time, storage paths, SQLite set-aside, progress, threads, systemd."""
