"""The experiment runner: a recipe's stages and their keys (``plan``), the state of each stage (``state``), and
running them (``execute``)."""
