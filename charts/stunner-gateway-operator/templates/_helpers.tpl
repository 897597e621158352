{{/* The control-plane namespace. */}}
{{- define "stunner.namespace" -}}
{{- .Values.namespace | default .Release.Namespace -}}
{{- end -}}

{{/* Common labels. */}}
{{- define "stunner.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* text|json, or fail with the offending value. */}}
{{- define "stunner.logFormat" -}}
{{- $f := . | default "text" -}}
{{- if not (has $f (list "text" "json")) -}}
{{- fail (printf "log format must be text or json, got %q" $f) -}}
{{- end -}}
{{- $f -}}
{{- end -}}
