"""The ``phaser`` command. Each subcommand lives in its own module here and
exposes ``register(app)``; ``main`` discovers them, so adding a command is
adding a file. Modules import heavy dependencies (jax, aiokafka) inside the
command body so ``phaser --help`` stays fast."""
