// Regenerate vectors.json: cd operator/backgroundtask/cron-vectors && GOFLAGS=-mod=mod go run .
//
// Test vectors for ../cron.ts, the TypeScript port of github.com/robfig/cron/v3
// (ParseStandard + SpecSchedule.Next), produced by robfig/cron itself, the way the
// Kubernetes CronJob controller calls it: cron.ParseStandard("TZ=<zone> <schedule>")
// and sched.Next(now). ../cron.test.ts asserts that the port agrees with every vector.
//
// Time zones come from the system's zoneinfo, or from Go's embedded copy
// (time/tzdata is linked in) where the machine has none; the TypeScript side
// uses Node's ICU data, so a tzdata mismatch between the two would show up as
// failing vectors near a changed zone rule.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"
	_ "time/tzdata"

	"github.com/robfig/cron/v3"
)

var schedules = []string{
	"*/5 * * * *",
	"0 8 * * *",
	"30 2 * * *",
	"0 2 * * *",
	"15 1 * * *",
	"0 0 * * 7", // 7 is not Sunday for robfig: parse error
	"@HOURLY",   // descriptors are lower case only: parse error
	"@hourly",
	"@daily",
	"@weekly",
	"@monthly",
	"@yearly",
	"0 0 1,15 * 1", // DOM and DOW both restricted: OR
	"0 0 */2 * 1",  // */2 is not a star: OR
	"0 0 * * MON-FRI",
	"0 12 * JAN,jul *",
	"5-10/2 3 * * *",
	"0 0 31 2 *", // never: Next returns the zero time
	"0 0 29 2 *",
	"H 2 * * *",  // error
	"0 0 * *",    // error
	"61 * * * *", // error
	"0 3 30 2-4 *",
	"59 23 31 12 *",
	"* * * * *",
	"0 0 ? * 0",
	// A few more that exercise DST edges and the parser.
	"30 0 * * *",
	"0 3 * * *",
	"45 2 * * 0",
	"@midnight",
	"0 0 * * 8",   // error
	"0 0 0 * *",   // error
	"5-2 * * * *", // error
	"1-2-3 * * * *",
	"*/0 * * * *",
	"0 0 * 13 *",
	"-1 * * * *",
	"1/2/3 * * * *",
	"",
	"0 0 * * * *",
	"@bogus",
}

var zones = []string{
	"UTC",
	"Europe/Berlin",
	"America/New_York",
	"Australia/Lord_Howe",
	"Asia/Kolkata",
	"America/Sao_Paulo",
}

// Instants every zone starts from: ordinary ones, some with seconds and milliseconds.
var commonStarts = []string{
	"2026-01-15T10:17:42.123Z",
	"2026-02-27T23:59:59.999Z",
	"2026-12-31T22:58:30.000Z",
}

// Extra windows scanned for zone transitions besides 2026-2027 (Sao Paulo has
// had no DST since 2019; its last changes moved midnight).
var extraWindows = map[string][2]string{
	"America/Sao_Paulo": {"2018-10-01T00:00:00Z", "2019-03-01T00:00:00Z"},
}

type Vector struct {
	Schedule string  `json:"schedule"`
	TimeZone string  `json:"timeZone,omitempty"`
	After    string  `json:"after,omitempty"`
	Next     *string `json:"next,omitempty"`
	Error    string  `json:"error,omitempty"`
}

const chain = 6 // the first Next plus 5 successive ones

func transitions(loc *time.Location, from, to time.Time) []time.Time {
	var out []time.Time
	t := from
	for t.Before(to) {
		_, end := t.In(loc).ZoneBounds()
		if end.IsZero() || !end.Before(to) {
			break
		}
		out = append(out, end)
		t = end
	}
	return out
}

func mustParse(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func main() {
	var vectors []Vector
	for _, spec := range schedules {
		if _, err := cron.ParseStandard(spec); err != nil {
			vectors = append(vectors, Vector{Schedule: spec, Error: err.Error()})
			continue
		}
		for _, zone := range zones {
			loc, err := time.LoadLocation(zone)
			if err != nil {
				panic(err)
			}
			// Exactly what the CronJob controller does.
			sched, err := cron.ParseStandard(fmt.Sprintf("TZ=%s %s", zone, spec))
			if err != nil {
				panic(err)
			}
			starts := map[time.Time]bool{}
			for _, s := range commonStarts {
				starts[mustParse(s)] = true
			}
			windows := [][2]time.Time{{mustParse("2026-01-01T00:00:00Z"), mustParse("2028-01-01T00:00:00Z")}}
			if w, ok := extraWindows[zone]; ok {
				windows = append(windows, [2]time.Time{mustParse(w[0]), mustParse(w[1])})
			}
			for _, w := range windows {
				for _, tr := range transitions(loc, w[0], w[1]) {
					// The day before (daily schedules reach the transition day),
					// and shortly before the change itself.
					starts[tr.Add(-26*time.Hour)] = true
					starts[tr.Add(-90*time.Minute).Add(250*time.Millisecond)] = true
				}
			}
			sorted := make([]time.Time, 0, len(starts))
			for t := range starts {
				sorted = append(sorted, t)
			}
			sort.Slice(sorted, func(i, j int) bool { return sorted[i].Before(sorted[j]) })
			for _, start := range sorted {
				after := start
				for i := 0; i < chain; i++ {
					next := sched.Next(after)
					v := Vector{Schedule: spec, TimeZone: zone, After: after.UTC().Format("2006-01-02T15:04:05.000Z07:00")}
					if !next.IsZero() {
						n := next.UTC().Format(time.RFC3339)
						v.Next = &n
					}
					vectors = append(vectors, v)
					if next.IsZero() {
						break
					}
					after = next
				}
			}
		}
	}
	// Indented as the project's formatter (biome) lays JSON out, so that it leaves the file alone.
	out, err := json.MarshalIndent(vectors, "", "  ")
	if err != nil {
		panic(err)
	}
	if err := os.WriteFile("vectors.json", append(out, '\n'), 0o644); err != nil {
		panic(err)
	}
	fmt.Fprintf(os.Stderr, "wrote %d vectors\n", len(vectors))
}
