"""The asyncio side of the client: mirrors the sync modules one for one (`client` ~ `_sidecar.client`,
`rescoring` ~ `rescoring`, `wrappers` ~ `wrappers`)."""
