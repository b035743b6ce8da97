"""The experiment runner: a recipe's stages and their keys (``plan``), the stage kinds (``kinds``) and the runner's
own executors (``stages``), the state of each stage (``state``), and running them (``execute``)."""
