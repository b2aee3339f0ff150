package httpapi

import "sort"

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

// ObserveStatuses makes the server report the status of every answer of a
// route, by "METHOD /path" as in the route table.
func ObserveStatuses(fn func(route string, status int)) Option {
	return func(s *server) { s.observe = fn }
}

// RouteStatuses returns every status each route can answer, by
// "METHOD /path" as in the route table.
func RouteStatuses() map[string][]int {
	out := map[string][]int{}
	for _, rt := range routes() {
		out[rt.method+" "+rt.path] = rt.statuses()
	}
	return out
}

// statuses returns every status rt can answer, sorted: its own answers,
// its Manager errors mapped by errorTable, the middleware's 401 (unless
// open) and 500 (panic recovery, internal errors).
func (rt route) statuses() []int {
	set := map[int]bool{500: true}
	if !rt.open {
		set[401], set[403] = true, true
	}
	for _, c := range rt.answers {
		set[c] = true
	}
	for _, err := range rt.fails {
		status, _, _ := classify(err)
		set[status] = true
	}
	out := make([]int, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Ints(out)
	return out
}
