package gateway

import (
	"strings"
	"testing"
)

// TestSMSParts checks SMSParts, and SMSSize's characters left in the last part (Infobip's
// preview: its own example of 60 GSM characters leaves 100, of 98 Turkish UCS-2 ones in two parts 36).
func TestSMSParts(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want, left int
	}{
		{"empty", "", 1, 160},
		{"an Auth0 code", "Your verification code is 123456", 1, 128},
		{"160 GSM characters", strings.Repeat("a", 160), 1, 0},
		{"161 GSM characters", strings.Repeat("a", 161), 2, 145},
		{"306 GSM characters", strings.Repeat("a", 306), 2, 0},
		{"307 GSM characters", strings.Repeat("a", 307), 3, 152},
		{"GSM letters outside ASCII stay 7-bit", strings.Repeat("é", 160), 1, 0},
		{"an extension character counts twice", strings.Repeat("a", 158) + "€", 1, 0},
		{"and past 160 makes two parts", strings.Repeat("a", 159) + "€", 2, 145},
		{"a backtick is not GSM", "`" + strings.Repeat("a", 69), 1, 0},
		{"a backslash is an extension character", strings.Repeat("a", 159) + "\\", 2, 145},
		{"DEL is not GSM", "\x7f" + strings.Repeat("a", 69), 1, 0},
		{"70 UCS-2 units", strings.Repeat("ж", 70), 1, 0},
		{"71 UCS-2 units", strings.Repeat("ж", 71), 2, 63},
		{"134 UCS-2 units", strings.Repeat("ж", 134), 2, 0},
		{"135 UCS-2 units", strings.Repeat("ж", 135), 3, 66},
		{"an emoji is two units", strings.Repeat("😀", 35), 1, 0},
		{"36 emoji", strings.Repeat("😀", 36), 2, 62},
		{"the longest text smsgate takes, UCS-2", strings.Repeat("ж", 1600), 24, 8},
		{"the longest text smsgate takes, GSM", strings.Repeat("a", 1600), 11, 83},
		{"Infobip's preview example", "Let's see how many characters remain unused in this message.", 1, 100},
		{"Infobip's Turkish preview example", "Mesaj gönderimi yapmadan önce önizleme seçeneğini kullanmanız doğru karar vermenize yardımcı olur.", 2, 36},
	} {
		if got := SMSParts(tc.text); got != tc.want {
			t.Errorf("%s: SMSParts = %d, want %d", tc.name, got, tc.want)
		}
		if n, left := SMSSize(tc.text); n != tc.want || left != tc.left {
			t.Errorf("%s: SMSSize = %d, %d; want %d, %d", tc.name, n, left, tc.want, tc.left)
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
