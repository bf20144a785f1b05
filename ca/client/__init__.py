"""The one HTTP client of the authority service, shared by the command line, the console, the
publisher and (later) witnesses and operators. It imports no database and no token code."""
