"""The process environment: settings that must happen before transformers is imported, and whether the hub answers."""

import os


def quiet_hf() -> None:
    """Silence transformers' progress bars and advisory warnings; our own progress bars stay."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Quick check (DNS + TCP) so an offline machine fails in seconds, not after minutes of retries."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return True  # the user asked for the local hub cache only: let transformers look there
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False
