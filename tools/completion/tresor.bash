# bash completion for tresor                      -*- shell-script -*-
# Installed into share/bash-completion/completions/tresor; or: source it.
# Completes commands, subcommands, options, and volume and snapshot names
# read from the store (commands that need no passphrase).
# shellcheck disable=SC2207  # COMPREPLY=($(compgen ...)): the completion idiom

_tresor_volumes() {
	[[ -d "$1" ]] || return
	tresor volume list "$1" 2>/dev/null | cut -f1
}

_tresor_snapshots() {
	[[ -d "$1" && -n "$2" ]] || return
	echo latest
	tresor snapshot list "$1" "$2" 2>/dev/null | awk 'NR > 1 { print $1 }'
}

_tresor() {
	local cur prev words cword
	_init_completion || return
	local cmd=${words[1]-} sub=${words[2]-}
	local common="--passphrase-file --json --help"

	if ((cword == 1)); then
		COMPREPLY=($(compgen -W "init volume mount stats check snapshot restore prune remote push recover repair daemon status --version --help" -- "$cur"))
		return
	fi
	case "$prev" in
	--passphrase-file | --ca-file | --credentials-file | --ssh-key | --known-hosts | --netrc)
		_filedir
		return
		;;
	--time | --note | --name | --set | --keep-* | --chunk-* | --kdf-log2n | --endpoint | --region | -o)
		return
		;;
	esac
	if [[ "$cur" == -* ]]; then
		local opts="$common"
		case "$cmd" in
		init) opts+=" --chunk-min --chunk-avg --chunk-max --kdf-log2n" ;;
		mount) opts+=" -o -f" ;;
		check) opts+=" --read-data --max-age --remote" ;;
		repair) opts+=" --from" ;;
		push) opts+=" --jobs --limit-upload --grace --image-every" ;;
		snapshot) opts+=" --time --set --note --name --scheduled" ;;
		restore) opts+=" --set --remote" ;;
		prune) opts+=" --set --keep-last --keep-hourly --keep-daily --keep-weekly --keep-monthly --keep-yearly --keep-within --dry-run" ;;
		remote | recover) opts+=" --lazy --full --takeover --chain --grace --object-lock-days --object-lock-mode --endpoint --region --path-style --virtual-hosted --ca-file --credentials-file --ssh-key --known-hosts --netrc --no-check" ;;
		esac
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
		return
	fi
	# positional arguments, counted without options and their values
	local -a pos=()
	local i w
	for ((i = 2; i < cword; i++)); do
		w=${words[i]}
		case "$w" in
		--passphrase-file | --time | --note | --name | --set | --keep-* | --chunk-* | --kdf-log2n | --endpoint | --region | \
			--ca-file | --credentials-file | --ssh-key | --known-hosts | --netrc | -o)
			((i++))
			;;
		-*) ;;
		*) pos+=("$w") ;;
		esac
	done
	local n=${#pos[@]}
	case "$cmd" in
	volume | snapshot | remote)
		if ((n == 0)); then
			case "$cmd" in
			volume) COMPREPLY=($(compgen -W "create list" -- "$cur")) ;;
			snapshot) COMPREPLY=($(compgen -W "create list pin unpin diff" -- "$cur")) ;;
			remote) COMPREPLY=($(compgen -W "add set list status takeover" -- "$cur")) ;;
			esac
		elif ((n == 1)); then
			_filedir -d
		elif [[ "$cmd" == snapshot ]] && ((n == 2)); then
			COMPREPLY=($(compgen -W "$(_tresor_volumes "${pos[1]}")" -- "$cur"))
		elif [[ "$cmd" == snapshot && "$sub" != create && "$sub" != list ]] && ((n >= 3)); then
			COMPREPLY=($(compgen -W "$(_tresor_snapshots "${pos[1]}" "${pos[2]}")" -- "$cur"))
		fi
		;;
	mount | prune | restore)
		if ((n == 0)); then
			_filedir -d
		elif ((n == 1)); then
			COMPREPLY=($(compgen -W "$(_tresor_volumes "${pos[0]}")" -- "$cur"))
		elif [[ "$cmd" == restore ]] && ((n == 2)); then
			COMPREPLY=($(compgen -W "$(_tresor_snapshots "${pos[0]}" "${pos[1]}")" -- "$cur"))
		elif [[ "$cmd" == mount || "$cmd" == restore ]]; then
			_filedir -d
		fi
		;;
	push)
		if ((n == 0)); then
			_filedir -d
		elif ((n == 1)) && [[ -d "${pos[0]}" ]]; then
			COMPREPLY=($(compgen -W "$(tresor remote list "${pos[0]}" 2>/dev/null | awk '/^[^ ]/ { print $1 }')" -- "$cur"))
		fi
		;;
	daemon)
		if ((n == 0)); then
			COMPREPLY=($(compgen -W "reload restart" -- "$cur"))
			_filedir
		elif ((n == 1)) && [[ "${pos[0]}" == reload || "${pos[0]}" == restart ]]; then
			_filedir
		fi
		;;
	status)
		((n == 0)) && _filedir
		;;
	*)
		_filedir -d
		;;
	esac
} && complete -F _tresor tresor
