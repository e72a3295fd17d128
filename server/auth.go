package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/botq/botq/api"
	"github.com/botq/botq/store"
)

// Role is what an API key may do: the API's roles, from least to most
// powerful: an enqueuer enqueues and reads its actions' status; an auditor
// reads everything; an operator also replays, cancels and pauses.
type Role = api.Role

// The roles, as the API defines them.
const (
	RoleEnqueuer = api.RoleEnqueuer
	RoleAuditor  = api.RoleAuditor
	RoleOperator = api.RoleOperator
)

// APIKey is one configured key. Only the key's SHA-256 is kept in memory.
type APIKey struct {
	Name string
	Role Role
	hash [32]byte
}

// ParseAPIKeys parses the key list: one "name:role:key" per line or comma.
// The key may be given as "sha256:<hex>" so that the plain key never sits in
// a file.
func ParseAPIKeys(s string) ([]APIKey, error) {
	var keys []APIKey
	names := map[string]bool{}
	for i, line := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == ',' }) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
			return nil, fmt.Errorf("entry %d is not name:role:key", i+1)
		}
		k := APIKey{Name: parts[0], Role: Role(parts[1])}
		switch k.Role {
		case RoleEnqueuer, RoleAuditor, RoleOperator:
		default:
			return nil, fmt.Errorf("entry %d (%s): role must be enqueuer, auditor or operator", i+1, k.Name)
		}
		if names[k.Name] {
			return nil, fmt.Errorf("entry %d: name %q is used twice", i+1, k.Name)
		}
		names[k.Name] = true
		if hexSum, ok := strings.CutPrefix(parts[2], "sha256:"); ok {
			b, err := hex.DecodeString(hexSum)
			if err != nil || len(b) != 32 {
				return nil, fmt.Errorf("entry %d (%s): sha256: needs 64 hex digits", i+1, k.Name)
			}
			copy(k.hash[:], b)
		} else {
			if len(parts[2]) < 16 {
				return nil, fmt.Errorf("entry %d (%s): key is shorter than 16 characters", i+1, k.Name)
			}
			k.hash = sha256.Sum256([]byte(parts[2]))
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// matchAPIKey returns the configured key whose hash matches presented, in
// time independent of which key matched.
func matchAPIKey(keys []APIKey, presented string) (*APIKey, bool) {
	sum := sha256.Sum256([]byte(presented))
	var found *APIKey
	for i := range keys {
		if subtle.ConstantTimeCompare(sum[:], keys[i].hash[:]) == 1 {
			found = &keys[i]
		}
	}
	return found, found != nil
}

// fingerprint identifies the key in console sessions (see console_session
// in migrations/00002_botq_tables.sql): the SHA-256 of the key's SHA-256,
// which can neither be presented as the key nor compared with a presented
// one.
func (k *APIKey) fingerprint() [32]byte { return sha256.Sum256(k.hash[:]) }

// consoleSignIn resolves a key presented at the console's sign-in: its
// principal and fingerprint.
func consoleSignIn(keys []APIKey) func(string) (api.Principal, []byte, bool) {
	return func(presented string) (api.Principal, []byte, bool) {
		k, ok := matchAPIKey(keys, presented)
		if !ok {
			return api.Principal{}, nil, false
		}
		fp := k.fingerprint()
		return api.Principal{Name: k.Name, Role: k.Role}, fp[:], true
	}
}

// consoleLookup resolves a session's key fingerprint to the configured key
// that has it now, in time independent of which key matched.
func consoleLookup(keys []APIKey) func([]byte) (api.Principal, bool) {
	fps := make([][32]byte, len(keys))
	for i := range keys {
		fps[i] = keys[i].fingerprint()
	}
	return func(fp []byte) (api.Principal, bool) {
		var found *APIKey
		for i := range keys {
			if subtle.ConstantTimeCompare(fp, fps[i][:]) == 1 {
				found = &keys[i]
			}
		}
		if found == nil {
			return api.Principal{}, false
		}
		return api.Principal{Name: found.Name, Role: found.Role}, true
	}
}

// ParseEncryptionKey checks the token encryption key.
func ParseEncryptionKey(s string) ([]byte, error) { return store.ParseKey(s) }
