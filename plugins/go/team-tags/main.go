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

// TeamTags is the plugin: the lookup tables, and each team as a JSON
// string, encoded once rather than per event.
type TeamTags struct {
	Settings
	quoted map[string][]byte
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
	quoted := map[string][]byte{settings.Default: nil}
	for _, table := range []map[string]string{settings.Users, settings.Roles} {
		for _, team := range table {
			quoted[team] = nil
		}
	}
	for team := range quoted {
		quoted[team], _ = json.Marshal(team)
	}
	return &TeamTags{settings, quoted}, nil
}

// owner is what team-tags reads of an event: the raw values of its
// top-level `user`, `roles`, `user_roles` and `team` (nil when absent),
// found by the SDK's field reader without decoding the rest of the event.
type owner struct {
	User, Roles, UserRoles, Team json.RawMessage
}

// ownerOf reads an event's owner fields in one pass over its JSON.
func ownerOf(event *plugin.Event) (owner, error) {
	values, err := event.Fields("user", "roles", "user_roles", "team")
	if err != nil {
		return owner{}, err
	}
	return owner{User: values[0], Roles: values[1], UserRoles: values[2], Team: values[3]}, nil
}

// Team is the event's team, "" for none. A user that is not a string, or
// roles that are not an array of strings, own nothing.
func (t *TeamTags) Team(o *owner) string {
	if user, ok := plugin.Text(o.User); ok {
		if team, ok := t.Users[user]; ok {
			return team
		}
	}
	roles := plugin.Items(o.Roles)
	if len(roles) == 0 {
		roles = plugin.Items(o.UserRoles)
	}
	for _, role := range roles {
		if name, ok := plugin.Text(role); ok {
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
		o, err := ownerOf(event)
		if err != nil {
			outcomes[i] = plugin.Fail(err.Error())
			continue
		}
		team := t.Team(&o)
		if team == "" || o.Team != nil {
			outcomes[i] = plugin.Keep()
			continue
		}
		outcomes[i] = plugin.Replace(withTeam(event.JSON, t.quoted[team]))
		tagged++
	}
	if tagged > 0 {
		plugin.Count("tagged", tagged)
	}
	return outcomes
}

// withTeam is the event's JSON object with `"team":` and the JSON string
// team as its last field.
func withTeam(event []byte, team []byte) []byte {
	end := len(event) - 1
	for end > 0 && event[end] != '}' {
		end--
	}
	out := make([]byte, 0, len(event)+len(team)+len(`,"team":`))
	out = append(out, event[:end]...)
	if len(bytes.TrimSpace(event[1:end])) > 0 {
		out = append(out, ',')
	}
	out = append(out, `"team":`...)
	out = append(out, team...)
	return append(out, event[end:]...)
}

func init() { plugin.Register(New) }

// main never runs: ferry calls the plugin through the SDK's exports.
func main() {}
