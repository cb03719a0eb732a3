{{/* Names and labels */}}
{{- define "surveil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "surveil.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "surveil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "surveil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The worker pods (Deployment, PDB, Service): the feed Job's pods do not match */}}
{{- define "surveil.workerSelector" -}}
app.kubernetes.io/name: {{ include "surveil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "surveil.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "surveil.saslEnabled" -}}
{{- if hasPrefix "SASL" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{/* Environment of the worker and the feed: settings from the ConfigMap, secrets by secretKeyRef */}}
{{- define "surveil.envFrom" -}}
- configMapRef:
    name: {{ include "surveil.fullname" . }}-settings
{{- end }}

{{/* A workload's own SASL principal: its user name and its password (by secretKeyRef, never a value). Each
workload has its own (the ACL layout of `surveil acl apply`: role worker for the Deployment, role feed for the
Job), so neither is in the shared settings ConfigMap. Called with (dict "root" $ "sasl" <the sasl values>). */}}
{{- define "surveil.saslEnv" -}}
{{- if include "surveil.saslEnabled" .root }}
- name: SURVEIL_SASL_USERNAME
  value: {{ .sasl.username | quote }}
- name: SURVEIL_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .sasl.passwordSecret.name }}
      key: {{ .sasl.passwordSecret.key }}
{{- end }}
{{- end }}

{{/* The worker's SASL principal (kafka.sasl: role worker) */}}
{{- define "surveil.workerSaslEnv" -}}
{{- include "surveil.saslEnv" (dict "root" . "sasl" .Values.kafka.sasl) }}
{{- end }}

{{/* The feed Job's SASL principal (feed.sasl: role feed, the one that may write and create the feed topics; the
worker's may not). Required with SASL: the schema says so first; these messages hold when it is skipped. */}}
{{- define "surveil.feedSaslEnv" -}}
{{- if include "surveil.saslEnabled" . }}
{{- $sasl := .Values.feed.sasl | default dict }}
{{- $why := "when feed.enabled with a SASL kafka.securityProtocol: the feed Job's own principal (role feed in the principals file of `surveil acl apply`, which may write the feed topics; the worker's may not)" }}
{{- $user := required (printf "feed.sasl.username is required %s" $why) $sasl.username }}
{{- $secret := $sasl.passwordSecret | default dict }}
{{- $_ := required (printf "feed.sasl.passwordSecret.name is required %s" $why) $secret.name }}
{{- if eq $user .Values.kafka.sasl.username }}
{{- fail (printf "feed.sasl.username is the workers' kafka.sasl.username (%s): the feed Job needs its own principal (role feed in the principals file of `surveil acl apply`); a user of role worker may not write the feed topics" $user) }}
{{- end }}
{{- include "surveil.saslEnv" (dict "root" . "sasl" $sasl) }}
{{- end }}
{{- end }}

{{/* The checkpoints' HMAC key: the worker only (the feed writes no checkpoint) */}}
{{- define "surveil.checkpointEnv" -}}
{{- if .Values.checkpointKeySecret.name }}
- name: SURVEIL_CHECKPOINT_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.checkpointKeySecret.name }}
      key: {{ .Values.checkpointKeySecret.key }}
{{- end }}
{{- end }}

{{/* The console's session cookie key: the worker only */}}
{{- define "surveil.sessionKeyEnv" -}}
{{- if .Values.console.sessionKeySecret.name }}
- name: SURVEIL_CONSOLE_SESSION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.console.sessionKeySecret.name }}
      key: {{ .Values.console.sessionKeySecret.key }}
{{- end }}
{{- end }}

{{/* Volumes both pods mount: the Kafka CA certificate */}}
{{- define "surveil.caVolume" -}}
{{- if .Values.kafka.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.caSecret.name }}
    items:
      - key: {{ .Values.kafka.caSecret.key }}
        path: ca.crt
{{- end }}
{{- end }}

{{- define "surveil.caMount" -}}
{{- if .Values.kafka.caSecret.name }}
- name: kafka-ca
  mountPath: /etc/surveil/kafka-ca
  readOnly: true
{{- end }}
{{- end }}
