"""The one HTTP client of the authority service, shared by the command line, the console, the
publisher and (later) witnesses and operators. It imports no database and no token code."""

import sys
import types

# httpx imports its own command line (httpx._main) when click and rich are installed — textual
# brings rich — which costs every jtca command about 0.1 s for a tool jtca never runs. An empty
# stand-in makes httpx fall back to its stub, as when they are not installed.
sys.modules.setdefault("httpx._main", types.ModuleType("httpx._main"))
