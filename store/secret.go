package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Keyring seals app tokens before they are stored and opens them after they
// are read, with AES-256-GCM. The key comes from the environment and never
// reaches the database; its id (a hash prefix) is stored next to each
// ciphertext, so a wrong key is reported as such rather than as garbage.
type Keyring struct {
	id   string
	aead cipher.AEAD
}

// ErrWrongKey is returned when a token was sealed under another key.
var ErrWrongKey = errors.New("token was encrypted with a different key (check BOTQ_ENCRYPTION_KEY)")

// ParseKey decodes a 32-byte key given as base64 (standard or URL alphabet)
// or hex.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, dec := range []func(string) ([]byte, error){
		hex.DecodeString,
		base64.StdEncoding.DecodeString,
		base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString,
		base64.RawURLEncoding.DecodeString,
	} {
		if b, err := dec(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("must be 32 random bytes, as 64 hex digits or base64 (openssl rand -base64 32)")
}

// NewKeyring returns a Keyring for a 32-byte key.
func NewKeyring(key []byte) (*Keyring, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("encryption key is %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("botq-key-id:"), key...))
	return &Keyring{id: hex.EncodeToString(sum[:4]), aead: aead}, nil
}

// ID names the key without revealing it.
func (k *Keyring) ID() string { return k.id }

// String never shows the key.
func (k *Keyring) String() string { return "Keyring(" + k.id + ")" }

// Seal encrypts a token for appID; the app id is bound as associated data,
// so a ciphertext copied to another app does not open.
func (k *Keyring) Seal(appID, token string) []byte {
	nonce := make([]byte, k.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return k.aead.Seal(nonce, nonce, []byte(token), []byte(appID))
}

// Open decrypts what Seal returned. keyID is the id stored with it.
func (k *Keyring) Open(appID, keyID string, sealed []byte) (string, error) {
	if keyID != "" && keyID != k.id {
		return "", ErrWrongKey
	}
	n := k.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("stored token is truncated")
	}
	plain, err := k.aead.Open(nil, sealed[:n], sealed[n:], []byte(appID))
	if err != nil {
		return "", fmt.Errorf("open stored token of app %q: %w", appID, ErrWrongKey)
	}
	return string(plain), nil
}
