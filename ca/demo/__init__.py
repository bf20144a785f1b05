"""Demo data for the officers' console (``jtca demo``): the world the service seeds (``seed``)
and the demo officers' sign-in secrets (``credentials``). The client half, the officers'
personal tokens at their desks, is ``ca.demo.officer_work``."""
