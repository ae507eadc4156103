import toy_steps  # noqa: F401  (registers the toy step kinds)
