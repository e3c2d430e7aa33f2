"""The management API of the dashboard (the Conveyor dashboard's REST API) under
`{basePath}/api`, on the same engine as the job server. See docs/management-api.md."""
