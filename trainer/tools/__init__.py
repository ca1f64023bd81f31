"""Tools every stage of the trainer may use, below all of them in the import order: GGUF writing
and reading, the pinned llama.cpp converter, the architectures it converts safely, the check that
a model folder carries no code, FIM token ids, the languages table, evaluation scores and the
on-disk form of a dataset's files. Nothing here imports a stage (`tests/test_layers.py`)."""
