# bash completion for fleetkeeper(8). Installed as
# /usr/share/bash-completion/completions/fleetkeeper.
# Task names come from the [task.NAME] sections of the configuration file
# (-c FILE, else $FLEETKEEPER_CONFIG, else /etc/fleetkeeper/fleetkeeper.conf).

_fleetkeeper_config()
{
	local i
	for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
		case ${COMP_WORDS[i]} in
		-c | --config)
			printf '%s' "${COMP_WORDS[i + 1]}"
			return
			;;
		esac
	done
	printf '%s' "${FLEETKEEPER_CONFIG:-/etc/fleetkeeper/fleetkeeper.conf}"
}

_fleetkeeper_tasks()
{
	local conf
	conf=$(_fleetkeeper_config)
	[[ -r $conf ]] || return
	sed -n 's/^[[:space:]]*\[task\.\([^]]*\)\].*/\1/p' -- "$conf" 2>/dev/null
}

_fleetkeeper()
{
	local cur prev cmd i
	COMPREPLY=()
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	local commands="run once trigger next status runs servers incidents trace ssh-test
		known-hosts ansible services recover notify store check-config version help"

	case $prev in
	-c | --config | --key | --known-hosts | backup)
		compopt -o filenames 2>/dev/null
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return
		;;
	esac

	cmd=""
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-c | --config)
			((i++))
			;;
		-*) ;;
		*)
			cmd=${COMP_WORDS[i]}
			break
			;;
		esac
	done

	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "-c --config -h --help --version" -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
		fi
		return
	fi

	local words
	case $cmd in
	once | next) words="$(_fleetkeeper_tasks)" ;;
	trigger) words="$(_fleetkeeper_tasks) --follow" ;;
	runs) words="--task --limit --json" ;;
	status) words="--json" ;;
	servers) words="show set-status forget maintenance --json --reason --for --from --end" ;;
	incidents) words="ack close --open --reason --json" ;;
	known-hosts) words="scan forget --all --accept" ;;
	ssh-test) words="--key --timeout --command --known-hosts --policy" ;;
	ansible) words="--server -e" ;;
	services) words="add list rm" ;;
	recover) words="--reprovision --follow" ;;
	notify) words="test" ;;
	store) words="check backup vacuum" ;;
	check-config) words="--list-keys --json" ;;
	*) words="" ;;
	esac
	[[ $prev == --task ]] && words="$(_fleetkeeper_tasks)"
	mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
}
complete -F _fleetkeeper fleetkeeper
