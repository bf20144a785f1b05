"""The authority's operations as contracts: one ``Operation`` per use case, with its typed
request and result (pydantic models), shared by the service (``ca.service``), its HTTP adapter
(``ca.api``) and the clients (``ca.client``, the command line, the console, the publisher).

Pure: no SQL, no PKCS#11, no HTTP. Importing ``ca.ops.all`` registers every area's operations.
"""
