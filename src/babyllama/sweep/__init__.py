"""`babyllama sweep`: studies and sweeps of a recipe on Optuna.

A sweep file (:mod:`.config`) names a base recipe, a search space (:mod:`.space`), the objective (a metric of one
stage of the recipe, or a verdict's difference), the sampler and the pruner. Every trial is an ordinary run directory
of the runner, ``SWEEP_DIR/trials/trial-NNNN``, whose ``stages`` folder is the sweep's one stage store: a stage whose
key two trials share (the teachers of a temperature x alpha grid) trains once, and a lock beside each stage folder
makes a second worker wait for it and reuse it. The study lives in Optuna storage (SQLite in the sweep directory by
default, any database URL Optuna accepts with ``--storage``), so a stopped sweep continues and workers on many
machines share one study; Optuna's heartbeat marks the trial of a killed worker failed. :mod:`.worker` runs trials,
:mod:`.study` opens storage and builds samplers and pruners, :mod:`.report` writes the table, figures and the best
overrides.
"""
