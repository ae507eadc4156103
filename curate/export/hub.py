"""Upload an export folder (``README.md`` + ``data/*.parquet``) to a Hugging Face dataset repo.

The token comes from ``HF_TOKEN`` or the user's ``huggingface-cli login``, read by
``huggingface_hub`` itself: curate never asks for it, logs it or writes it anywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path

from curate.errors import UsageError

log = logging.getLogger(__name__)


def push_folder(folder: str | Path, repo_id: str, *, private: bool = True, local_copy: str | Path | None = None) -> str:
    """Create (if needed) the dataset repo ``repo_id`` and upload ``folder`` to it; returns the repo URL.

    Offline, unauthorized or unreachable: one :class:`UsageError` line naming the repo and
    the local copy, which stays where it is.
    """
    from huggingface_hub import HfApi, errors

    transport = getattr(errors, "HTTPError", OSError)  # huggingface_hub's HTTP client errors
    try:
        api = HfApi()
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(folder),
                          commit_message="Upload dataset exported by curate")
    except (OSError, ValueError, transport) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"could not push to the Hugging Face dataset repo '{repo_id}' ({reason}); "
                         f"the export is kept at {local_copy or folder}") from None
    log.info("pushed %s to %s", folder, url)
    return str(url)
