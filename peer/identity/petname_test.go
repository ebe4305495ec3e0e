package identity

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePetName(t *testing.T) {
	id := fixedKey(3).ID().String()
	for in, want := range map[string]string{
		"garage":                 "garage",
		"Garage":                 "garage",
		"pi-4":                   "pi-4",
		"7":                      "7",
		strings.Repeat("a", 63):  strings.Repeat("a", 63),
		strings.ToUpper(id[:51]): strings.ToLower(id[:51]),
	} {
		if got, err := ParsePetName(in); err != nil || got != want {
			t.Errorf("ParsePetName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-a", "a-", "a.b", "a b", "é", "a_b", strings.Repeat("a", 64), id, strings.ToUpper(id), "garage.tunnel"} {
		if got, err := ParsePetName(in); !errors.Is(err, ErrBadPetName) || got != "" {
			t.Errorf("ParsePetName(%q) = %q, %v; want ErrBadPetName", in, got, err)
		}
	}
	if _, err := ParsePetName(id); err == nil || !strings.Contains(err.Error(), "is a device ID") {
		t.Errorf("ParsePetName(ID) = %v, want it to say the name is an ID", err)
	}
}
