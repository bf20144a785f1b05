"""The tokens the authority and its sites reach by label: the embedded SoftHSM2 tokens under
the state folder (``embedded``), a site's own tokens (``site``), and signers for a token key
built under the policy (``signers``: vendor mechanisms, host-assisted use per key class)."""
