package gateway

import "testing"

func TestValidSender(t *testing.T) {
	for from, want := range map[string]bool{
		"+15005550006": true, "15005550006": true, "12345": true, "123": true, "+123456789012345": true,
		"MyBank": true, "MY-BANK.1": true, "Acme Co": true, "ABC": true, "A1234567890": true, "zzz": true, "ZZZ": true,
		"": false, "12": false, "+1234567890123456": false, "+": false, "++123": false, "+1 415 555": false,
		"AB": false, "ABCDEFGHIJKL": false, " Bank": false, "Bank ": false, "Bank\x00": false,
		"Bänk": false, "Bank!": false, "12-34": false, "Bank\n": false,
	} {
		if got := ValidSender(from); got != want {
			t.Errorf("ValidSender(%q) = %v, want %v", from, got, want)
		}
	}
}

func TestSenderKey(t *testing.T) {
	same := [][]string{
		{"+14155550100", "14155550100"},
		{"ACME", "Acme", "acme"},
		{"My Bank", "MY BANK"},
	}
	for _, group := range same {
		for _, s := range group[1:] {
			if SenderKey(s) != SenderKey(group[0]) {
				t.Errorf("SenderKey(%q) = %q, SenderKey(%q) = %q: want the same", s, SenderKey(s), group[0], SenderKey(group[0]))
			}
		}
	}
	for _, pair := range [][2]string{{"ACME", "ACME1"}, {"+14155550100", "+14155550101"}, {"123", "+1234"}, {"Acme Co", "AcmeCo"}} {
		if SenderKey(pair[0]) == SenderKey(pair[1]) {
			t.Errorf("SenderKey(%q) = SenderKey(%q) = %q: want them apart", pair[0], pair[1], SenderKey(pair[0]))
		}
	}
}
