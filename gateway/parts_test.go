package gateway

import (
	"strings"
	"testing"
)

func TestSMSParts(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       int
	}{
		{"empty", "", 1},
		{"an Auth0 code", "Your verification code is 123456", 1},
		{"160 GSM characters", strings.Repeat("a", 160), 1},
		{"161 GSM characters", strings.Repeat("a", 161), 2},
		{"306 GSM characters", strings.Repeat("a", 306), 2},
		{"307 GSM characters", strings.Repeat("a", 307), 3},
		{"GSM letters outside ASCII stay 7-bit", strings.Repeat("é", 160), 1},
		{"an extension character counts twice", strings.Repeat("a", 158) + "€", 1},
		{"and past 160 makes two parts", strings.Repeat("a", 159) + "€", 2},
		{"a backtick is not GSM", "`" + strings.Repeat("a", 69), 1},
		{"70 UCS-2 units", strings.Repeat("ж", 70), 1},
		{"71 UCS-2 units", strings.Repeat("ж", 71), 2},
		{"134 UCS-2 units", strings.Repeat("ж", 134), 2},
		{"135 UCS-2 units", strings.Repeat("ж", 135), 3},
		{"an emoji is two units", strings.Repeat("😀", 35), 1},
		{"36 emoji", strings.Repeat("😀", 36), 2},
		{"the longest text smsgate takes, UCS-2", strings.Repeat("ж", 1600), 24},
		{"the longest text smsgate takes, GSM", strings.Repeat("a", 1600), 11},
	} {
		if got := SMSParts(tc.text); got != tc.want {
			t.Errorf("%s: SMSParts = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestGSM7(t *testing.T) {
	// The whole GSM 03.38 alphabet, basic and extension table, as Vonage's driver listed it.
	const alphabet = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà" + "^{}\\[~]|€\f"
	for text, want := range map[string]bool{"Your code is 1234": true, "Código: 1234 – ok": false, "Prix: 5€ {ok}": true, "Ваш код": false, "ß@£$¥": true,
		alphabet: true, "`": false, "\t": false} {
		if GSM7(text) != want {
			t.Errorf("GSM7(%q) = %v", text, !want)
		}
	}
}

func BenchmarkSMSParts(b *testing.B) {
	for _, tc := range []struct{ name, text string }{
		{"auth0-code", "Your verification code is 123456. It expires in 5 minutes."},
		{"ucs2-1600", strings.Repeat("ж", 1600)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				SMSParts(tc.text)
			}
		})
	}
}
