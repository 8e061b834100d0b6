"""Write use cases, one module per area. Each adds and flushes, writes its audit event
in the same transaction and never commits: the view or command commits at the edge.
Each takes the acting user as an argument, so it is testable without a request."""
