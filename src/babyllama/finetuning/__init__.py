"""Fine-tuning evaluation: (Super)GLUE and MSGS as the BabyLM pipelines run them (:mod:`.protocols`)."""
