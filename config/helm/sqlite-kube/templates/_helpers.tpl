{{/* The webhook's certificate comes from cert-manager. */}}
{{- define "sqlite-kube.certManager" -}}
{{- if eq .Values.webhook.certificate "cert-manager" }}true{{ else if eq .Values.webhook.certificate "self-issued" }}{{ else }}{{ fail "webhook.certificate must be self-issued or cert-manager" }}{{ end }}
{{- end }}
