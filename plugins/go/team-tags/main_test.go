package main

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"ferry.dev/plugin"
)

const config = `{"users":{"alice@example.com":"data","alice":"data","joe":"platform"},"roles":{"admin":"security"}}`

func newTags(t *testing.T, config string) *TeamTags {
	t.Helper()
	p, err := New([]byte(config))
	if err != nil {
		t.Fatalf("config %s: %v", config, err)
	}
	return p.(*TeamTags)
}

func TestUsersComeBeforeRolesAndTheDefaultComesLast(t *testing.T) {
	tags := newTags(t, `{"users":{"alice":"data"},"roles":{"admin":"security","dev":"apps"},"default":"unowned"}`)
	batch := plugin.Split([]byte(strings.Join([]string{
		`{"event":"user.login","user":"alice","roles":["admin"]}`,
		`{"event":"user.login","user":"bob","roles":["viewer","dev","admin"]}`,
		`{"event":"user.login","user":"carol","user_roles":["admin"]}`,
		`{"event":"port","user":{"user":"lisa"}}`,
		`{"event":"user.login","user":"alice","team":"kept"}`,
		`{}`,
	}, "\n")))
	outcomes := tags.Process(batch)
	want := []string{
		`{"event":"user.login","user":"alice","roles":["admin"],"team":"data"}`,
		`{"event":"user.login","user":"bob","roles":["viewer","dev","admin"],"team":"apps"}`,
		`{"event":"user.login","user":"carol","user_roles":["admin"],"team":"security"}`,
		`{"event":"port","user":{"user":"lisa"},"team":"unowned"}`,
		"",
		`{"team":"unowned"}`,
	}
	for i, outcome := range outcomes {
		if want[i] == "" {
			if !outcome.IsKeep() {
				t.Errorf("event %d: want keep, got %s", i, outcome.JSON())
			}
			continue
		}
		if got := string(outcome.JSON()); got != want[i] {
			t.Errorf("event %d: got %s, want %s", i, got, want[i])
		}
	}
}

// An event that is not one JSON object fails with what is wrong and where;
// owner fields of the wrong kind own nothing; nested names are not read.
func TestBadEventsFailSayingWhereAndOddOwnersOwnNothing(t *testing.T) {
	tags := newTags(t, `{"users":{"alice":"data"},"roles":{"admin":"security"}}`)
	outcomes := tags.Process(plugin.Split([]byte(strings.Join([]string{
		`{"event":"user.login","user":"alice",}`,
		`{"event":"user.login","roles":"admin","user_roles":{"admin":1},"x":{"user":"alice"}}`,
		`{"us\u0065r":"alice","user_roles":[1,"admin"]}`,
	}, "\n"))))
	if !outcomes[0].IsFail() || outcomes[0].Reason() != "malformed JSON at byte 37: expected a key" {
		t.Errorf("bad JSON: %v %q", outcomes[0].IsFail(), outcomes[0].Reason())
	}
	if !outcomes[1].IsKeep() {
		t.Errorf("odd owners: %s", outcomes[1].JSON())
	}
	if got := string(outcomes[2].JSON()); got != `{"us\u0065r":"alice","user_roles":[1,"admin"],"team":"data"}` {
		t.Errorf("escaped key: %s", got)
	}
}

func TestAConfigThatTagsNothingOrMisspeltIsRefused(t *testing.T) {
	for config, want := range map[string]string{
		`{}`:                           "config: give `users`, `roles` or `default`: with none, no event gets a team",
		`{"user":{"alice":"data"}}`:    `config: unknown field "user"`,
		`{"roles":{"admin":""}}`:       `config: roles."admin": the team must not be empty`,
		`{"users":{"alice":["data"]}}`: "config: cannot unmarshal array into Go struct field Settings.users.alice of type string",
	} {
		if _, err := New([]byte(config)); err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %s", config, err, want)
		}
	}
}

// The fixtures: every event is handled, and each tagged one is the same
// event with its team added.
func TestTheFixturesAreTaggedByTheirOwners(t *testing.T) {
	file, err := os.Open("../../../fixtures/teleport-events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var lines []string
	scanner := bufio.NewScanner(file)
	scanner.Buffer(nil, 1<<20)
	for scanner.Scan() {
		lines = append(lines, scanner.Text())
	}
	outcomes := newTags(t, config).Process(plugin.Split([]byte(strings.Join(lines, "\n"))))
	teams := map[string]int{}
	for i, outcome := range outcomes {
		if outcome.IsKeep() {
			continue
		}
		var before, after map[string]any
		if json.Unmarshal([]byte(lines[i]), &before) != nil || json.Unmarshal(outcome.JSON(), &after) != nil {
			t.Fatalf("line %d: %s", i+1, outcome.JSON())
		}
		team, _ := after["team"].(string)
		delete(after, "team")
		if len(after) != len(before) {
			t.Fatalf("line %d changed beyond its team", i+1)
		}
		teams[team]++
	}
	if teams["data"] != 40 || teams["platform"] != 11 || teams["security"] != 2 || len(teams) != 3 {
		t.Fatalf("teams: %v", teams)
	}
}

// BenchmarkProcess runs the fixtures through Process in batches of 500, as
// ferry's release bench does (`go test -bench . -benchmem`).
func BenchmarkProcess(b *testing.B) {
	text, err := os.ReadFile("../../../fixtures/teleport-events.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	var batch []string
	for len(batch) < 500 {
		batch = append(batch, lines...)
	}
	joined := []byte(strings.Join(batch[:500], "\n"))
	p, err := New([]byte(`{"users":{"alice":"data"},"roles":{"admin":"security"},"default":"other"}`))
	if err != nil {
		b.Fatal(err)
	}
	tags := p.(*TeamTags)
	b.ResetTimer()
	for b.Loop() {
		tags.Process(plugin.Split(joined))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*500), "ns/event")
}
