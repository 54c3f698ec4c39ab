package config

import (
	"encoding/json"
	"reflect"
)

// RedactedText is the text shown in place of a secret.
const RedactedText = "[redacted]"

// MarshalJSON writes the effective configuration as JSON with every field
// tagged `secret:"true"` replaced by RedactedText, so that /config never shows
// a credential.
func (f *File) MarshalJSON() ([]byte, error) {
	type plain File // drops this method, keeps the fields
	// A JSON round trip makes a deep copy that can be edited safely.
	b, err := json.Marshal((*plain)(f))
	if err != nil {
		return nil, err
	}
	var c plain
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	redact(reflect.ValueOf(&c).Elem())
	return json.Marshal(&c)
}

func redact(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			redact(v.Elem())
		}
	case reflect.Slice:
		for i := range v.Len() {
			redact(v.Index(i))
		}
	case reflect.Map:
		// Maps hold header values and the like, never secrets.
	case reflect.Struct:
		t := v.Type()
		for i := range v.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			fv := v.Field(i)
			if sf.Tag.Get("secret") == "true" && fv.Kind() == reflect.String {
				if fv.String() != "" {
					fv.SetString(RedactedText)
				}
				continue
			}
			redact(fv)
		}
	}
}

func reflectValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }
