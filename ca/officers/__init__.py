"""Officers and what they may do: the roster with roles and provinces (``roster``), what an
officer signs byte for byte (``statements``), officer certificates and the officer CA
(``certificates``), and dual control: one officer asks, others decide (``dual_control``)."""
