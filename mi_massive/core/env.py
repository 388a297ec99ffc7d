"""Process-wide settings that must happen before transformers is imported."""

import os


def quiet_hf() -> None:
    """Silence transformers' progress bars and advisory warnings; our own progress bars stay."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
