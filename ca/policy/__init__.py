"""The policy in force (``in_force``: the file or the approved version a service runs under,
``load_policy``) and the decisions the services take under it (``authorization``)."""
