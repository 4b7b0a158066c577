"""Start the dashboard, refusing before the server starts to serve an open address without sign-in.

    python -m dashboard.serve --server.address 127.0.0.1 --server.port 8501     # what `make run` does
    python -m dashboard.serve --server.address 0.0.0.0      # error: ... refuses to serve ... without sign-in

Arguments are ``streamlit run`` flags. They and the config/secrets files are read by Streamlit's own loader, so the
check sees the address and the ``[auth]`` section the server would use; then this process becomes
``streamlit run streamlit_app.py`` with the same arguments. A plain ``streamlit run`` skips this check, and the
frame (:func:`dashboard.auth.gate`) refuses every page instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"


def check(args: list[str]) -> str | None:
    """Why a server started with ``streamlit run`` ``args`` must not start: an open address without sign-in
    (:func:`dashboard.auth.refusal`) or an ``[auth]`` section Streamlit could not sign anyone in with; else None."""
    from streamlit import config
    from streamlit.web import bootstrap, cli

    from dashboard import auth

    with cli.main_run.make_context("run", [str(APP), *args]) as ctx:
        flags = {name: value for name, value in ctx.params.items() if name not in ("target", "args")}
    config._main_script_path = str(APP)  # `streamlit run` sets it too: .streamlit/ beside the script counts
    bootstrap.load_config_options(flag_options=flags)
    section = auth.auth_section()
    problem = None if section is None else auth.config_problem(section)
    if problem is not None:
        return f"sign-in is misconfigured: {problem} (README: 'Working as a team: signing in')"
    return auth.refusal(config.get_option("server.address"), section is not None)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    reason = check(args)
    if reason is not None:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", str(APP), *args])
    return 0  # not reached: execv replaces this process


if __name__ == "__main__":
    sys.exit(main())
