"""MuJoCo toy world: scenes built with MjSpec, embodiments, toys, tasks, cameras, experts."""
