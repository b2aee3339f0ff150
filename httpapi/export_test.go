package httpapi

// RouteInfo is a route of the table, for the tests.
type RouteInfo struct{ Method, Path string }

// Routes returns the route table, for the tests.
func Routes() []RouteInfo {
	var out []RouteInfo
	for _, r := range routes() {
		out = append(out, RouteInfo{r.method, r.path})
	}
	return out
}
