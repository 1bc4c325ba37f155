"""TLS to the broker: whether a CA file can be used, in the words the log and `gate config check` share."""

from __future__ import annotations

import os
import ssl


def ca_file_problem(path: str) -> str:
    """Why a CA file cannot be used for TLS ('' when it can), in the words the log uses too."""
    if os.path.isdir(path):
        return f"{path} is a directory, not a CA certificate file"
    if not os.path.exists(path):
        return f"{path} does not exist"
    try:
        ssl.create_default_context(cafile=path)
    except PermissionError:
        return f"{path} is not readable by this user"
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        return f"{path} holds no PEM certificate (expected the venue CA's certificate, -----BEGIN CERTIFICATE-----)"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    return ""
