// team-tags: tags each audit event with the team that owns it, so that a
// SIEM can route and count events per team.
//
// The owner is looked up in the config's tables: first the event's user
// (Teleport's `user` field), then its roles (`roles`, else `user_roles`) in
// the order the event lists them, else `default`. The team goes into a new
// top-level field, `team`; an event that has a `team` already, or whose
// owner is unknown and with no default, passes unchanged.
//
//	[config]
//	default = "unowned"                       # optional
//	users = { "alice@example.com" = "data" }  # user → team
//	roles = { "admin" = "platform" }          # role → team
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"ferry.dev/plugin"
)

// Settings is the plugin's config.
type Settings struct {
	Default string            `json:"default"`
	Users   map[string]string `json:"users"`
	Roles   map[string]string `json:"roles"`
}

// TeamTags is the plugin: the lookup tables.
type TeamTags struct {
	Settings
}

// New reads the tables; a team named "" is refused (it would tag nothing).
func New(config []byte) (plugin.Plugin, error) {
	var settings Settings
	if err := plugin.DecodeConfig(config, &settings); err != nil {
		return nil, err
	}
	for table, entries := range map[string]map[string]string{"users": settings.Users, "roles": settings.Roles} {
		for key, team := range entries {
			if team == "" {
				return nil, fmt.Errorf("config: %s.%q: the team must not be empty", table, key)
			}
		}
	}
	if len(settings.Users) == 0 && len(settings.Roles) == 0 && settings.Default == "" {
		return nil, errors.New("config: give `users`, `roles` or `default`: with none, no event gets a team")
	}
	return &TeamTags{settings}, nil
}

// owner is what team-tags reads of an event.
type owner struct {
	User      any             `json:"user"`
	Roles     []any           `json:"roles"`
	UserRoles []any           `json:"user_roles"`
	Team      json.RawMessage `json:"team"`
}

// Team is the event's team, "" for none.
func (t *TeamTags) Team(o *owner) string {
	if user, ok := o.User.(string); ok {
		if team, ok := t.Users[user]; ok {
			return team
		}
	}
	roles := o.Roles
	if len(roles) == 0 {
		roles = o.UserRoles
	}
	for _, role := range roles {
		if name, ok := role.(string); ok {
			if team, ok := t.Roles[name]; ok {
				return team
			}
		}
	}
	return t.Default
}

// Process tags each event it finds an owner for.
func (t *TeamTags) Process(batch []*plugin.Event) []plugin.Outcome {
	outcomes := make([]plugin.Outcome, len(batch))
	tagged := uint64(0)
	for i, event := range batch {
		var o owner
		if err := json.Unmarshal(event.JSON, &o); err != nil {
			outcomes[i] = plugin.Fail("not a JSON object: " + err.Error())
			continue
		}
		team := t.Team(&o)
		if team == "" || o.Team != nil {
			outcomes[i] = plugin.Keep()
			continue
		}
		outcomes[i] = plugin.Replace(withTeam(event.JSON, team))
		tagged++
	}
	if tagged > 0 {
		plugin.Count("tagged", tagged)
	}
	return outcomes
}

// withTeam is the event's JSON object with `"team":team` as its last field.
func withTeam(event []byte, team string) []byte {
	value, _ := json.Marshal(team)
	end := len(event) - 1
	for end > 0 && event[end] != '}' {
		end--
	}
	out := append([]byte{}, event[:end]...)
	if len(bytes.TrimSpace(event[1:end])) > 0 {
		out = append(out, ',')
	}
	out = append(out, `"team":`...)
	out = append(out, value...)
	return append(out, event[end:]...)
}

func init() { plugin.Register(New) }

// main never runs: ferry calls the plugin through the SDK's exports.
func main() {}
