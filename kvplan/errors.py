"""Every error kvplan raises on purpose.

Each is a subclass of `KvplanError` *and* of the standard exception a caller would expect
(`ValueError`, `KeyError`, `FileNotFoundError`), so `except ValueError` keeps working. Messages are
one line: what is wrong, with the numbers, and what to change. The CLI prints `str(err)` and exits 2;
the app shows it inline.
"""

from __future__ import annotations


class KvplanError(Exception):
    """Base of every error kvplan raises deliberately."""

    def __str__(self) -> str:  # KeyError would otherwise repr() its message
        return str(self.args[0]) if self.args else self.__class__.__name__


class InvalidInputError(KvplanError, ValueError):
    """An argument is out of range or malformed (negative context, `tp=0`, "12 parsecs").

    `field` names the argument, so the UI can show the message beside that widget.
    """

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class UnsupportedConfigError(KvplanError, ValueError):
    """A config.json is malformed, inconsistent, or uses a layer type kvplan does not model.

    Raised by the parser with the offending config field in `field`; never a silent guess.
    """

    def __init__(self, field: str, message: str):
        super().__init__(f"config field `{field}`: {message}")
        self.field = field


class UnknownModelError(KvplanError, KeyError):
    """A model id is neither bundled nor a path to a config; `suggestions` holds close bundled ids."""

    def __init__(self, model: str, suggestions: tuple[str, ...] = (), *, missing_file: bool = False):
        if missing_file:  # the user named a file (.gguf, .json, a path): bundled ids are beside the point
            super().__init__(f"no such file: {model!r} (give an existing config.json, model folder or .gguf)")
        else:
            hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
            super().__init__(
                f"unknown model {model!r}: not a bundled id nor a path to a config.json.{hint}"
                " (`kvplan models` lists the bundled ids)"
            )
        self.model = model
        self.suggestions = suggestions


class UnknownGPUError(KvplanError, KeyError):
    """A GPU name is not in the catalog; `suggestions` holds close names."""

    def __init__(self, gpu: str, suggestions: tuple[str, ...] = ()):
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(
            f"unknown GPU {gpu!r}.{hint} (`kvplan gpus` lists them; or give --gpu-memory SIZE)"
        )
        self.gpu = gpu
        self.suggestions = suggestions


class UnsupportedDtypeError(KvplanError, ValueError):
    """A KV dtype is unknown, or known but not supported by the chosen engine."""

    def __init__(self, dtype: str, message: str):
        super().__init__(f"kv dtype {dtype!r}: {message}")
        self.dtype = dtype


class DoesNotFitError(KvplanError, ValueError):
    """A deployment does not fit in memory. Carries the numbers and what would fit.

    `need_bytes` / `have_bytes` are per GPU; `max_model_len` is the longest context that would fit
    (0 if none), mirroring vLLM's "the estimated maximum model length is N".
    """

    def __init__(self, message: str, *, need_bytes: int = 0, have_bytes: int = 0,
                 max_model_len: int = 0):
        super().__init__(message)
        self.need_bytes = need_bytes
        self.have_bytes = have_bytes
        self.max_model_len = max_model_len


class HubError(KvplanError, OSError):
    """Fetching from the Hugging Face Hub failed (gated, missing, offline, timeout, too large)."""


class GatedModelError(HubError):
    """The Hub repo is gated or private (HTTP 401/403) and no token with access was given."""

    def __init__(self, repo_id: str, suggestions: tuple[str, ...] = ()):
        hint = f" (or use the bundled {', '.join(suggestions)})" if suggestions else ""
        super().__init__(f"model {repo_id!r} is gated: accept the license on the model page "
                         f"(https://huggingface.co/{repo_id}) and set HF_TOKEN{hint}")
        self.repo_id = repo_id
        self.suggestions = suggestions


class HubModelNotFoundError(HubError, UnknownModelError):
    """No such model (or revision, or config.json) on the Hub; `suggestions` holds close bundled ids.

    Also an `UnknownModelError` (and so a `KeyError`), like an unknown bundled id.
    """

    def __init__(self, repo_id: str, suggestions: tuple[str, ...] = (), what: str = "no such model"):
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        KvplanError.__init__(self, f"{what} on the Hugging Face Hub: {repo_id!r}.{hint}"
                                   " (`kvplan models` lists the bundled ids)")
        self.model = self.repo_id = repo_id
        self.suggestions = suggestions


class HubUnavailableError(HubError):
    """The Hub could not be reached in time (offline, timeout, HTTP 5xx) and nothing usable is cached."""

    def __init__(self, repo_id: str, reason: str, suggestions: tuple[str, ...] = ()):
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"cannot fetch {repo_id!r} from the Hugging Face Hub: {reason}.{hint}")
        self.repo_id = repo_id
        self.suggestions = suggestions


class LogParseError(KvplanError, ValueError):
    """An engine log kvplan cannot explain: no engine recognized, or the lines it needs are missing.

    `engine` is the engine detected ("" when none); `missing` names the log lines or settings needed.
    """

    def __init__(self, engine: str, message: str, *, missing: tuple[str, ...] = ()):
        super().__init__(f"log: {message}")
        self.engine = engine
        self.missing = tuple(missing)
