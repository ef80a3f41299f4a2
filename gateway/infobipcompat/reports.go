package infobipcompat

import (
	"encoding/json"
	"time"

	"github.com/smsgate/smsgate/gateway"
	"github.com/smsgate/smsgate/providers/infobip"
)

// TimeLayout is Infobip's timestamp layout.
const TimeLayout = infobip.TimeLayout

// Message is what a report or a log line says about one message, taken from the message log.
type Message struct {
	ID, BulkID, To, CallbackData string
	// Status is the message log's (sent, delivered, undelivered, failed, rejected); Error its code.
	Status, Error  string
	Price          float64
	Currency       string
	SentAt, DoneAt time.Time
	// Parts is how many parts an SMS was sent as (0: one). Infobip counts them (smsCount,
	// messageCount) and prices one (pricePerMessage); Price is the message's, for all its parts.
	Parts int
}

// ReportStatus maps a message log status to Infobip's status group.
func ReportStatus(status string) Status {
	switch status {
	case gateway.StatusDelivered:
		return Status{GroupID: 3, GroupName: "DELIVERED", ID: 5, Name: "DELIVERED_TO_HANDSET", Description: "Message delivered to handset"}
	case gateway.StatusUndelivered:
		return Status{GroupID: 2, GroupName: "UNDELIVERABLE", ID: 9, Name: "UNDELIVERABLE_NOT_DELIVERED", Description: "Message sent, not delivered"}
	case gateway.StatusFailed:
		return Status{GroupID: 5, GroupName: "REJECTED", ID: 21, Name: "REJECTED_SYSTEM_ERROR", Description: "Message not sent"}
	case gateway.StatusRejected:
		return RejectedDestination
	}
	return Status{GroupID: 1, GroupName: "PENDING", ID: 7, Name: "PENDING_ENROUTE", Description: "Message sent to next instance"}
}

type price struct {
	PricePerMessage float64 `json:"pricePerMessage"`
	Currency        string  `json:"currency"`
}

type errorObj struct {
	GroupID     int    `json:"groupId"`
	GroupName   string `json:"groupName"`
	ID          int    `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Permanent   bool   `json:"permanent"`
}

type report struct {
	BulkID       string    `json:"bulkId,omitempty"`
	MessageID    string    `json:"messageId"`
	To           string    `json:"to"`
	SentAt       string    `json:"sentAt,omitempty"`
	DoneAt       string    `json:"doneAt,omitempty"`
	SMSCount     int       `json:"smsCount,omitempty"`
	MessageCount int       `json:"messageCount,omitempty"`
	Price        *price    `json:"price,omitempty"`
	Status       Status    `json:"status"`
	Error        *errorObj `json:"error,omitempty"`
	CallbackData string    `json:"callbackData,omitempty"`
}

func toReport(source string, m Message) report {
	r := report{BulkID: m.BulkID, MessageID: m.ID, To: m.To, Status: ReportStatus(m.Status), CallbackData: m.CallbackData}
	parts := max(1, m.Parts)
	if source == SMSv3 {
		r.MessageCount = parts
	} else {
		r.SMSCount = parts
	}
	if !m.SentAt.IsZero() {
		r.SentAt = m.SentAt.UTC().Format(TimeLayout)
	}
	if !m.DoneAt.IsZero() {
		r.DoneAt = m.DoneAt.UTC().Format(TimeLayout)
	}
	if m.Currency != "" {
		r.Price = &price{PricePerMessage: m.Price / float64(parts), Currency: m.Currency}
	}
	r.Error = reportError(m.Status, m.Error)
	return r
}

// reportError is the error object of a report, in Infobip's error groups; permanent says whether
// the same message sent again fails the same way. Its name is the provider's (or smsgate's) error
// code; the ids 5101 and 5102 are smsgate's own, as Infobip has none for these outcomes.
func reportError(status, code string) *errorObj {
	switch status {
	case gateway.StatusDelivered, gateway.StatusSent:
		return &errorObj{GroupID: 0, GroupName: "OK", ID: 0, Name: "NO_ERROR", Description: "No Error", Permanent: false}
	case gateway.StatusFailed:
		// Not sent: every provider failed, timed out or throttled. Sending it again may work.
		return &errorObj{GroupID: 3, GroupName: "OPERATOR_ERRORS", ID: 5101, Name: errName(code), Description: "not sent: no provider took the message", Permanent: false}
	case gateway.StatusRejected:
		// A provider refused the destination itself (an invalid or unreachable number).
		return &errorObj{GroupID: 2, GroupName: "USER_ERRORS", ID: 5102, Name: errName(code), Description: "the provider rejected the destination", Permanent: true}
	case "":
		return nil
	}
	return &errorObj{GroupID: 1, GroupName: "HANDSET_ERRORS", ID: 1, Name: errName(code), Description: "as reported by the provider", Permanent: true}
}

func errName(code string) string {
	if code == "" {
		return "EC_UNKNOWN"
	}
	return code
}

// Reports renders delivery reports, {"results":[...]}, in source's shape (pushed to a notifyUrl
// or pulled from GET /sms/{1,3}/reports).
func Reports(source string, ms []Message) []byte {
	out := struct {
		Results []report `json:"results"`
	}{Results: []report{}}
	for _, m := range ms {
		out.Results = append(out.Results, toReport(source, m))
	}
	b, _ := json.Marshal(out)
	return b
}

// Logs renders GET /sms/1/logs (v2) or /sms/3/logs (v3). The text is never stored, so it is
// never returned; numbers are as the message log keeps them (masked unless the operator chose
// full numbers).
func Logs(source string, ms []Message) []byte {
	if source != SMSv3 {
		type v2log struct {
			report
			From string `json:"from,omitempty"`
		}
		out := struct {
			Results []v2log `json:"results"`
		}{Results: []v2log{}}
		for _, m := range ms {
			r := toReport(SMSv2, m)
			r.CallbackData = ""
			out.Results = append(out.Results, v2log{report: r})
		}
		b, _ := json.Marshal(out)
		return b
	}
	type v3log struct {
		Destination  string    `json:"destination"`
		BulkID       string    `json:"bulkId,omitempty"`
		MessageID    string    `json:"messageId"`
		SentAt       string    `json:"sentAt,omitempty"`
		DoneAt       string    `json:"doneAt,omitempty"`
		MessageCount int       `json:"messageCount"`
		Price        *price    `json:"price,omitempty"`
		Status       Status    `json:"status"`
		Error        *errorObj `json:"error,omitempty"`
	}
	out := struct {
		Results []v3log `json:"results"`
	}{Results: []v3log{}}
	for _, m := range ms {
		r := toReport(SMSv3, m)
		out.Results = append(out.Results, v3log{Destination: r.To, BulkID: r.BulkID, MessageID: r.MessageID, SentAt: r.SentAt, DoneAt: r.DoneAt,
			MessageCount: r.MessageCount, Price: r.Price, Status: r.Status, Error: r.Error})
	}
	b, _ := json.Marshal(out)
	return b
}
