"""Key ceremonies: the ceremony file parsed and planned for review (``file``, pure) and its
run in the tokens, leaving a signed transcript (``run``)."""
