"""What every part of the authority shares: its errors (``errors``), the clock it is
given (``clock``), files written atomically (``files``), the owners of unfinished operations
(``owners``) and the words shown to people by the console and the command line
(``vocabulary``). Pure: no SQL, no PKCS#11, no UI."""
