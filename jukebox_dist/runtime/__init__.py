"""The distributed runtime: plain workers, the scheduler, and Ray executors around them (the only Ray code)."""
